-- One task with its tags.
SELECT t.*, (SELECT CAST(json_agg(g.name) AS text) FROM task_tags tt
               JOIN tags g ON g.id = tt.tag_id WHERE tt.task_id = t.id) AS tag_names
  FROM tasks t WHERE t.id = :task AND t.user_id = :user;
