#!/usr/bin/env bash
# Log partition upkeep for cron (the server also runs it daily):
#   0 3 * * * DATABASE_URL=postgres://... /path/to/scripts/partition_maintenance.sh
# Creates the partitions for this month and the next three, then drops the
# partitions older than LOG_RETENTION_MONTHS (default 6; 0 keeps everything)
# after carrying their live jobs forward as job.snapshot events, and prints
# check_partition_health().
set -euo pipefail
: "${DATABASE_URL:=postgres://postgres@127.0.0.1:5432/spooled?sslmode=disable}"
months="${LOG_RETENTION_MONTHS:-6}"
case "$months" in ''|*[!0-9]*) echo "LOG_RETENTION_MONTHS must be a whole number" >&2; exit 2;; esac
psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q -c "CALL maintain_jobs_partitions(${months})"
psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "SELECT * FROM check_partition_health()"
