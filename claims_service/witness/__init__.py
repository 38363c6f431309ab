"""The witness as a process of its own (`claimsctl witness init|serve`): its directory (key, the
logs it trusts, its state and evidence) and its HTTP endpoint. The protocol itself — requests,
answers, cosignatures, consistency checks, state and evidence — is the ledger's
(`claims_service.ledger.witness`), so that anyone can lift it out and check it."""
