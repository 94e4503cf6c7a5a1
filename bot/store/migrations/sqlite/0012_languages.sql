-- Issue 16: the language a server chose for its public messages ('auto': the server's preferred locale), and the
-- language each job (and the intake it comes from) recorded when it was made, so its card never switches.
ALTER TABLE guild_settings ADD COLUMN language TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE intakes ADD COLUMN language TEXT NOT NULL DEFAULT 'en-US';
ALTER TABLE jobs ADD COLUMN language TEXT NOT NULL DEFAULT 'en-US';
