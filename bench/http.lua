-- wrk script for bench/http.sh: one of three request kinds, an exact count of
-- the answers by status, and an optional constant sending rate.
--
--   wrk -t2 -c32 -d13s -s bench/http.lua URL -- MODE ACTIVE_S RATE FIRST LAST TOKEN
--
-- MODE    healthz (GET /healthz), raise (POST /v1/tickets, street-whistle,
--         fire-safety) or report (POST /v1/tickets/T<id>/events
--         {"event":"report"}, one ticket per request, ids FIRST..LAST).
-- ACTIVE_S  requests are sent for this many seconds only. wrk's -d must be
--         longer: the requests still in flight then get their answers, so the
--         counts below are exact (wrk drops the answers it is waiting for when
--         -d ends, while the daemon commits those changes anyway).
-- RATE    requests per second over all threads, 0 for as fast as the
--         connections go. With a rate, every thread sends on a fixed schedule
--         (delay() holds a connection back until its slot comes). wrk
--         measures latency from the moment a request is written, so a request
--         sent late because every connection was busy is not charged the wait
--         (no coordinated-omission correction, unlike wrk2); the "late" count
--         says how often that happened.
-- TOKEN   the bearer token (not used for healthz).
--
-- done() prints one line "RESULT key=value ..." that bench/http.sh parses.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } wh_timespec_t;
int clock_gettime(int clk_id, wh_timespec_t *tp);
]]
local ts = ffi.new("wh_timespec_t")
local CLOCK_MONOTONIC = 1

-- Milliseconds on the monotonic clock, which every thread shares.
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tindex", nthreads)
  nthreads = nthreads + 1
  threads[nthreads] = thread
end

-- Globals of each running thread (read back by done() through thread:get).
statuses = {}
sent = 0
late = 0
t_first = 0
t_last = 0

local mode, active_ms, interval, next_id, last_id, step
local stop_at, next_slot
local fixed_req
local reserved = {}

function init(args)
  mode = args[1] or "healthz"
  active_ms = tonumber(args[2] or "10") * 1000
  local rate = tonumber(args[3] or "0")
  local first = tonumber(args[4] or "1")
  last_id = tonumber(args[5] or "0")
  local token = args[6] or ""
  local nthr = tonumber(args[7] or "1")
  -- Thread k takes ids first+k, first+k+n, ... so no id is used twice.
  step = nthr
  next_id = first + tindex
  interval = 0
  if rate > 0 then
    interval = 1000 * nthr / rate
  end
  local headers = { ["Authorization"] = "Bearer " .. token,
                    ["Content-Type"] = "application/json" }
  if mode == "healthz" then
    fixed_req = wrk.format("GET", "/healthz", {})
  elseif mode == "raise" then
    fixed_req = wrk.format("POST", "/v1/tickets", headers,
      '{"workflow":"street-whistle","category":"fire-safety",' ..
      '"title":"消防通道被占用","description":"3 号楼消防通道被电动车堵塞",' ..
      '"location":{"address":"新滩镇 3 号楼","grid":"G-12","lat":27.24,"lon":111.47}}')
  else
    report_headers = headers
  end
end

-- Called before every request of a connection. Past the active period, or
-- with no ticket left, the connection is parked for good.
function delay()
  local now = now_ms()
  if t_first == 0 then
    t_first = now
    stop_at = now + active_ms
    next_slot = now
  end
  if now >= stop_at then
    return 3600 * 1000
  end
  if mode == "report" then
    if next_id > last_id then
      return 3600 * 1000
    end
    reserved[#reserved + 1] = next_id
    next_id = next_id + step
  end
  sent = sent + 1
  if interval == 0 then
    return 0
  end
  local wait = next_slot - now
  if wait < -1 then
    late = late + 1
    -- Behind schedule: send now, and do not try to catch up in a burst.
    next_slot = now + interval
    return 0
  end
  next_slot = next_slot + interval
  if wait < 0 then
    return 0
  end
  return math.floor(wait)
end

function request()
  if mode ~= "report" then
    return fixed_req
  end
  local id = table.remove(reserved, 1)
  if id == nil then
    -- wrk calls request() once at start to check the script, before any
    -- delay(); that request is never sent.
    return wrk.format("GET", "/healthz", {})
  end
  return wrk.format("POST", string.format("/v1/tickets/T%08d/events", id),
    report_headers, '{"event":"report"}')
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  t_last = now_ms()
end

function done(summary, latency, requests)
  local counts = {}
  local total_sent, total_late, first, last = 0, 0, nil, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    total_sent = total_sent + thread:get("sent")
    total_late = total_late + thread:get("late")
    local f, l = thread:get("t_first"), thread:get("t_last")
    if f > 0 and (first == nil or f < first) then first = f end
    if l > last then last = l end
  end
  local answered = 0
  local parts = {}
  for status, n in pairs(counts) do
    answered = answered + n
    parts[#parts + 1] = string.format("s%d=%d", status, n)
  end
  table.sort(parts)
  local secs = 0
  if first ~= nil and last > first then secs = (last - first) / 1000 end
  local rate = 0
  if secs > 0 then rate = answered / secs end
  io.write(string.format(
    "RESULT sent=%d answered=%d secs=%.3f rate=%.1f late=%d p50=%.3f p90=%.3f p99=%.3f max=%.3f " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d %s\n",
    total_sent, answered, secs, rate, total_late,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, table.concat(parts, " ")))
end
