-- Signed RevenueCat deliveries, each with a new event id, spread over 1,000 users.
local counter, thread_id = 0, 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  auth = os.getenv("BENCH_RC_AUTH")
  started = os.time() * 1000
end

function request()
  counter = counter + 1
  local user = "bench-" .. ((counter * 7 + id) % 1000)
  local body = string.format(
    '{"api_version":"1.0","event":{"id":"bench-%d-%d-%d","type":"RENEWAL","app_user_id":"%s",' ..
    '"original_app_user_id":"%s","aliases":["%s"],"product_id":"monthly","entitlement_ids":["premium"],' ..
    '"event_timestamp_ms":%d,"expiration_at_ms":%d,"original_transaction_id":"tx-%s",' ..
    '"environment":"PRODUCTION","store":"APP_STORE"}}',
    started, id, counter, user, user, user, started + counter, started + counter + 2592000000, user)
  return wrk.format("POST", "/webhooks/revenuecat",
    {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body)
end
