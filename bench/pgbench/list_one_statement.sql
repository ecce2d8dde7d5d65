-- The default list page as the service now sends it: the page, each task's
-- tags as a JSON array, and the window count of matching rows.
SELECT t.*, COUNT(*) OVER () AS total,
       (SELECT CAST(json_agg(g.name) AS text) FROM task_tags tt
          JOIN tags g ON g.id = tt.tag_id WHERE tt.task_id = t.id) AS tag_names
  FROM tasks t WHERE t.user_id = :user
 ORDER BY t.created_at DESC, t.id DESC LIMIT 20 OFFSET 0;
