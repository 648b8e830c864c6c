-- wrk script for bench/origin_load.py: every request is a URL never sent before,
-- <prefix><thread>-<n>, so every request through a cache is a miss. Argument after
-- "--": the prefix (give each run its own, e.g. "/cold/r1/", so runs never share URLs).
-- done() prints one line "BENCHJSON {...}" (latencies in microseconds), as the shared
-- harness's report.lua does.
local prefix, counter = "/cold/", 0
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_id", threads)
end

function init(args)
   prefix = args[1] or prefix
end

function request()
   counter = counter + 1
   return wrk.format("GET", string.format("%s%d-%d", prefix, thread_id, counter))
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
      '"err_connect":%.0f,"err_read":%.0f,"err_write":%.0f,"err_status":%.0f,"err_timeout":%.0f,' ..
      '"lat_mean_us":%.1f,"lat_max_us":%.0f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
