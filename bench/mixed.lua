-- A request mix for wrk: each request is made by a random seeded user.
-- 55% first page, 20% filtered and sorted page, 10% stats, 15% create.
local users = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  local id, token = line:match("^(%S+) (%S+)$")
  users[#users + 1] = { id = id, auth = "Bearer " .. token }
end

local counter = 0
local filtered = {
  "?status=pending&sort=due_date&order=asc",
  "?tag=work&sort=priority",
  "?q=report&limit=50",
  "?offset=20&limit=20",
}

request = function()
  counter = counter + 1
  local user = users[math.random(#users)]
  local headers = { ["Authorization"] = user.auth }
  local base = "/api/" .. user.id
  local roll = math.random(100)
  if roll <= 55 then
    return wrk.format("GET", base .. "/tasks", headers)
  elseif roll <= 75 then
    return wrk.format("GET", base .. "/tasks" .. filtered[math.random(#filtered)], headers)
  elseif roll <= 85 then
    return wrk.format("GET", base .. "/stats", headers)
  else
    headers["Content-Type"] = "application/json"
    local body = string.format(
      '{"title":"bench task %d","priority":"high","tags":["work","bench"]}', counter)
    return wrk.format("POST", base .. "/tasks", headers, body)
  end
end

done = function(summary, latency, requests)
  io.write(string.format("p50 %.1f ms, p90 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("non-2xx/3xx responses: %d\n", summary.errors.status))
end
