-- wrk script for benchmarks/wallet.py: replays pre-signed wallet requests, one file per thread
-- (one thread per connection, so a thread's bet always reaches the server before its win).
-- Each line: path, timestamp, nonce, signature, idempotency key, body — tab-separated.
-- Usage: wrk -t N -c N -d S -s wallet.lua URL -- DIR CLIENT_ID

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  local dir, client = args[1], args[2]
  queue, next_one, refused = {}, 1, 0
  for line in io.lines(dir .. "/" .. id .. ".tsv") do
    local path, ts, nonce, sig, key, body =
      line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)$")
    queue[#queue + 1] = wrk.format("POST", path, {
      ["X-Client-Id"] = client,
      ["X-Request-Timestamp"] = ts,
      ["X-Request-Nonce"] = nonce,
      ["X-Signature"] = sig,
      ["Idempotency-Key"] = key,
      ["Content-Type"] = "application/json",
    }, body)
  end
end

-- The queue moves on when an answer arrives, not when a request is asked for: wrk asks one
-- thread for a request at start-up only to check the script, and never sends it.
function request()
  return queue[next_one]
end

function response(status, headers, body)
  if status ~= 200 then
    refused = refused + 1
    if refused == 1 then io.stderr:write("refused: " .. status .. " " .. body .. "\n") end
  end
  next_one = next_one + 1
  if next_one > #queue then
    -- Out of signed requests: a replay would be refused, so this thread stops.
    next_one = #queue
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d,' ..
    ' "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
