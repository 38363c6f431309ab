"""Attachments off the ledger: documents (medical records, images, reports) stored content-addressed
in a blob store, encrypted under their member's data key, with only their hash, size and media
type on the ledger (``Claim.AttachmentAdded``).

* ``store``: where the bytes live: `BlobStore`, the interface (an S3-compatible store implements
  it too: README, "Attachments"), and `DirectoryBlobStore`, a directory under the data directory
  (files 0600, directories 0700, every write atomic);
* ``sealed``: the stored form of a document: chunked AES-256-GCM (each chunk authenticated, its
  order and the end of the document too) under the member's data key, and the SHA-256 and size of
  the document as uploaded, checked on every read (a blob that does not check out is DATA_LOSS).

A document is kept under ``<member key id>/<sha256>``: the same document of one member is stored
once, and a member's erasure deletes their directory (the key it was sealed under is destroyed
with it).

Imports: the standard library, cryptography and ``claims_service.errors``.
"""
