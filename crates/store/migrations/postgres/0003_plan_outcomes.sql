-- Plans are applied by a job on any replica: a plan records when its apply started sending to
-- TestRail and how it ended (the apply report as JSON, or why it stopped). A plan whose apply
-- was cut short (its replica died) is 'interrupted' and never applied again.
ALTER TABLE plans DROP CONSTRAINT plans_status_check;
ALTER TABLE plans ADD CONSTRAINT plans_status_check
    CHECK (status IN ('ready', 'applying', 'applied', 'interrupted'));
ALTER TABLE plans ADD COLUMN started_at BIGINT;
ALTER TABLE plans ADD COLUMN outcome TEXT;
