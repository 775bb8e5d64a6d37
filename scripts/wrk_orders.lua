-- wrk script: every request is POST /orders from a customer who has not ordered yet.
-- The tokens file (orderly-bench --tokens-out FILE) holds the product id, then one access
-- token per line. After the file comes wrk's thread count: thread k takes tokens k+1, k+1+T,
-- k+1+2T, ... so no two requests share a customer.
--   wrk -t2 -c64 -d10s -s scripts/wrk_orders.lua http://127.0.0.1:3000 -- FILE 2
--
-- The count is an argument because wrk starts each thread as soon as it is set up: a count
-- learnt from later `setup` calls reaches the first thread after it has started sending, and
-- two threads then walk the same tokens (the same customer ordering twice is a deferred
-- order, not the request this script means to measure).
local threads = 0

function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

function init(args)
  step = tonumber(args[2])
  if step == nil or index >= step then
    error("give the tokens file and then wrk's thread count: -- FILE THREADS")
  end
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
