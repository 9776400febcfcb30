-- Signed RevenueCat RENEWALs, each with a new event id, of active subscriptions drawn at
-- random from $SCALE_RENEWALS_FILE ("user sub<TAB>original_transaction_id" a line:
-- `bench/scale.py sample`), as bench/ingest.lua sends them for its 1,000 users.
local renewals, counter = {}, 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  auth = os.getenv("BENCH_RC_AUTH")
  started = os.time() * 1000
  for line in io.lines(os.getenv("SCALE_RENEWALS_FILE")) do
    local user, key = line:match("([^\t]+)\t([^\t]+)")
    renewals[#renewals + 1] = {user, key}
  end
  math.randomseed(started + id)
end

function request()
  counter = counter + 1
  local user, key = unpack(renewals[math.random(#renewals)])
  local body = string.format(
    '{"api_version":"1.0","event":{"id":"scale-%d-%d-%d","type":"RENEWAL","app_user_id":"%s",' ..
    '"original_app_user_id":"%s","aliases":["%s"],"product_id":"com.example.premium.monthly",' ..
    '"entitlement_ids":["premium"],"event_timestamp_ms":%d,"expiration_at_ms":%d,' ..
    '"original_transaction_id":"%s","environment":"PRODUCTION","store":"APP_STORE"}}',
    started, id, counter, user, user, user, started + counter, started + counter + 2592000000, key)
  return wrk.format("POST", "/webhooks/revenuecat",
    {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body)
end
