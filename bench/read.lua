-- Entitlement reads for 1,000 users, with a server API key.
local counter = 0

function init(args)
  key = os.getenv("BENCH_API_KEY")
end

function request()
  counter = counter + 1
  return wrk.format("GET", "/v1/users/bench-" .. (counter % 1000) .. "/entitlements",
    {["Authorization"] = "Bearer " .. key})
end
