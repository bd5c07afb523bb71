-- Failed unauthenticated attempts (enrolment codes that do not work) per kind and source, one
-- window an hour: shared by every replica, so a source limited at one is limited at all and a
-- flood spread over replicas counts once. Bounded: expired windows are deleted, and past the cap
-- the oldest go first (see crates/server/src/limits.rs).
CREATE TABLE failure_windows (
    what      TEXT NOT NULL,
    source    TEXT NOT NULL,        -- an IPv4 address, or an IPv6 /64
    start     BIGINT NOT NULL,
    failures  BIGINT NOT NULL,
    PRIMARY KEY (what, source)
);
CREATE INDEX failure_windows_start ON failure_windows(start);
