-- The default list page as the service sent it before: count, page, tags of
-- the page (the service names the page's ids; a subquery stands in for them).
SELECT COUNT(*) FROM tasks WHERE user_id = :user;
SELECT * FROM tasks WHERE user_id = :user ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 0;
SELECT tt.task_id, g.name FROM task_tags tt JOIN tags g ON g.id = tt.tag_id
 WHERE tt.task_id IN (SELECT id FROM tasks WHERE user_id = :user
                       ORDER BY created_at DESC, id DESC LIMIT 20);
