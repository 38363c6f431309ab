-- The FHIR endpoint's ExplanationOfBenefit?patient= search (projections.benefits.patient_eobs): a
-- provider's or a dispute team's search names a member id without its payer, which the
-- (payer_id, member_id, ...) index cannot serve; this one serves it in the same order.
CREATE INDEX explanation_of_benefits_patient_idx
    ON explanation_of_benefits (member_id, first_date_of_service, submitted_position);
