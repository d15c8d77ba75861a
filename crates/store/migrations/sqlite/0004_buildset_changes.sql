-- The changes a buildset was made for (an on-change scheduler's group, an only_if_changed firing's), kept by
-- triggered, dependent and rebuilt buildsets: what a build's "changes" are, e.g. whose authors a report tells.
CREATE TABLE buildset_changes (
    buildsetid BIGINT NOT NULL REFERENCES buildsets (id),
    changeid BIGINT NOT NULL REFERENCES changes (id),
    PRIMARY KEY (buildsetid, changeid)
);
