-- A create with one tag, as the service sends it: one transaction, durable
-- at commit. Its ceiling bounds create throughput, and so (with N busy
-- connections) the mean create latency from below: N / tps.
BEGIN;
INSERT INTO tasks (user_id, title, title_search, completed, priority, created_at, updated_at)
VALUES (:user, 'bench create', 'bench create', false, 2, now(), now()) RETURNING *;
INSERT INTO tags (user_id, name) VALUES (:user, 'bench') ON CONFLICT (user_id, name) DO NOTHING;
INSERT INTO task_tags (task_id, tag_id)
SELECT currval(pg_get_serial_sequence('tasks', 'id')), id FROM tags
 WHERE user_id = :user AND name IN ('bench') FOR SHARE
ON CONFLICT (task_id, tag_id) DO NOTHING;
COMMIT;
