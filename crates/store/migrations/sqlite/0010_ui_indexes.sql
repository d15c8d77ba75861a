-- What the web UI's pages ask besides the API: the builds a change started (console, change page), and the
-- builds a build triggered (build page).
CREATE INDEX buildset_changes_changeid ON buildset_changes (changeid);
CREATE INDEX buildsets_parent_buildid ON buildsets (parent_buildid) WHERE parent_buildid IS NOT NULL;
