-- Entitlement reads, with a server API key, of users drawn at random from
-- $SCALE_USERS_FILE (one user sub a line: `bench/scale.py sample`, from the million).
local users = {}
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  key = os.getenv("BENCH_API_KEY")
  for line in io.lines(os.getenv("SCALE_USERS_FILE")) do users[#users + 1] = line end
  math.randomseed(os.time() * 100 + id)
end

function request()
  return wrk.format("GET", "/v1/users/" .. users[math.random(#users)] .. "/entitlements",
    {["Authorization"] = "Bearer " .. key})
end
