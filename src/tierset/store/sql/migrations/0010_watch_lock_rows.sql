-- Watch reports locks (issue 14; store/watch.py, `watch_level_states`): to know a
-- setting's lock after revision N it looks for the first LOCK, UNLOCK or DELETE row of
-- the (level, scope_id, key) after N and, when there is one, the last at or before N.
-- Through change_log_setting_revision that walks every PUT of the key in between: for a
-- hot key never locked, a resume from far back would read its whole history once per
-- window. This partial index holds only those rows (a lock, an unlock, a delete), so
-- both probes are one index descent whatever the number of puts, and the puts, the
-- common row, cost nothing more to write.
CREATE INDEX change_log_lock_rows ON change_log (level, scope_id, key, revision)
    WHERE operation IN ('LOCK', 'UNLOCK', 'DELETE');
