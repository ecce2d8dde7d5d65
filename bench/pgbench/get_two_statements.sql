-- One task, then its tags: how the service read it before.
SELECT * FROM tasks WHERE id = :task AND user_id = :user;
SELECT tt.task_id, g.name FROM task_tags tt JOIN tags g ON g.id = tt.tag_id WHERE tt.task_id = :task;
