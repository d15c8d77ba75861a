-- A change's parent (Buildbot's parent_changeids): the last change before it on the same branch, repository,
-- project and codebase, found on this index.
CREATE INDEX changes_lineage ON changes (repository, branch, project, codebase, id);
