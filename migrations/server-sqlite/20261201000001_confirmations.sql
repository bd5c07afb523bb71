-- Separation of duties: an account confirmed independently of its creator (a second admin who
-- handed out its enrolment code, or — one-admin installations — its creator after a delay with
-- an alarm). Forward-only; never edit once landed.
CREATE TABLE user_confirmations (
    user_id       TEXT PRIMARY KEY REFERENCES users(id),
    confirmed_by  TEXT NOT NULL REFERENCES users(id),
    via           TEXT NOT NULL,             -- second_admin | delay
    at            INTEGER NOT NULL,
    mac           BLOB
);
