-- wrk script: every request is POST /orders from a customer who has not ordered yet.
-- The tokens file (orderly-bench --tokens-out FILE) holds the product id, then one access
-- token per line. Each wrk thread takes every n-th token, so no two requests share one.
--   wrk -t2 -c64 -d10s -s scripts/wrk_orders.lua http://127.0.0.1:3000 -- FILE
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads - 1)
  for _, t in ipairs(threads) do
    t:set("step", #threads)
  end
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  product = table.remove(tokens, 1)
  body = '{"items":[{"product_id":"' .. product .. '","quantity":1}]}'
  next_token = index + 1
end

function request()
  local token = tokens[next_token]
  if token == nil then
    -- Out of customers: a request that fails fast and is counted apart.
    return wrk.format("GET", "/out-of-customers")
  end
  next_token = next_token + step
  return wrk.format("POST", "/orders", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end
