package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spooled-go/spooled/queries"
)

// PlanLimits are an organization's limits (contract §5.6). Nil means
// unlimited.
type PlanLimits struct {
	Tier                       string `json:"tier"`
	DisplayName                string `json:"display_name"`
	MaxJobsPerDay              *int64 `json:"max_jobs_per_day"`
	MaxActiveJobs              *int64 `json:"max_active_jobs"`
	MaxQueues                  *int64 `json:"max_queues"`
	MaxWorkers                 *int64 `json:"max_workers"`
	MaxAPIKeys                 *int64 `json:"max_api_keys"`
	MaxSchedules               *int64 `json:"max_schedules"`
	MaxWorkflows               *int64 `json:"max_workflows"`
	MaxWebhooks                *int64 `json:"max_webhooks"`
	MaxPayloadSizeBytes        int64  `json:"max_payload_size_bytes"`
	RateLimitRequestsPerSecond int64  `json:"rate_limit_requests_per_second"`
	RateLimitBurst             int64  `json:"rate_limit_burst"`
	JobRetentionDays           int64  `json:"job_retention_days"`
	HistoryRetentionDays       int64  `json:"history_retention_days"`
}

func n(v int64) *int64 { return &v }

var plans = map[string]PlanLimits{
	"free": {Tier: "free", DisplayName: "Free", MaxJobsPerDay: n(1000), MaxActiveJobs: n(10), MaxQueues: n(2),
		MaxWorkers: n(1), MaxAPIKeys: n(2), MaxSchedules: n(1), MaxWorkflows: n(0), MaxWebhooks: n(1),
		MaxPayloadSizeBytes: 65536, RateLimitRequestsPerSecond: 5, RateLimitBurst: 10, JobRetentionDays: 3, HistoryRetentionDays: 1},
	"starter": {Tier: "starter", DisplayName: "Starter", MaxJobsPerDay: n(10000), MaxActiveJobs: n(500), MaxQueues: n(10),
		MaxWorkers: n(5), MaxAPIKeys: n(5), MaxSchedules: n(10), MaxWorkflows: n(5), MaxWebhooks: n(5),
		MaxPayloadSizeBytes: 262144, RateLimitRequestsPerSecond: 25, RateLimitBurst: 50, JobRetentionDays: 14, HistoryRetentionDays: 7},
	"pro": {Tier: "pro", DisplayName: "Pro", MaxJobsPerDay: n(100000), MaxActiveJobs: n(5000), MaxQueues: n(50),
		MaxWorkers: n(25), MaxAPIKeys: n(25), MaxSchedules: n(50), MaxWorkflows: n(25), MaxWebhooks: n(20),
		MaxPayloadSizeBytes: 1048576, RateLimitRequestsPerSecond: 100, RateLimitBurst: 200, JobRetentionDays: 30, HistoryRetentionDays: 30},
	"enterprise": {Tier: "enterprise", DisplayName: "Enterprise", MaxPayloadSizeBytes: 5242880,
		RateLimitRequestsPerSecond: 500, RateLimitBurst: 1000, JobRetentionDays: 90, HistoryRetentionDays: 90},
}

var upgrades = map[string]string{"free": "starter", "starter": "pro", "pro": "enterprise"}

// Plans lists the four plans in order.
func Plans() []PlanLimits {
	return []PlanLimits{plans["free"], plans["starter"], plans["pro"], plans["enterprise"]}
}

// LimitsFor resolves a tier (unknown tiers, "deleted" included, are free)
// and applies an organization's custom_limits: a number replaces a limit,
// null makes a max_* limit unlimited.
func LimitsFor(tier string, custom json.RawMessage) (PlanLimits, error) {
	p, ok := plans[strings.ToLower(tier)]
	if !ok {
		p = plans["free"]
	}
	if c := nullJSON(custom); c != nil {
		var over map[string]*float64
		if err := json.Unmarshal(c, &over); err != nil {
			return p, fmt.Errorf("custom_limits: %w", err)
		}
		for k, v := range over {
			var iv *int64
			if v != nil {
				x := int64(*v)
				iv = &x
			}
			switch k {
			case "max_jobs_per_day":
				p.MaxJobsPerDay = iv
			case "max_active_jobs":
				p.MaxActiveJobs = iv
			case "max_queues":
				p.MaxQueues = iv
			case "max_workers":
				p.MaxWorkers = iv
			case "max_api_keys":
				p.MaxAPIKeys = iv
			case "max_schedules":
				p.MaxSchedules = iv
			case "max_workflows":
				p.MaxWorkflows = iv
			case "max_webhooks":
				p.MaxWebhooks = iv
			case "max_payload_size_bytes":
				if iv != nil {
					p.MaxPayloadSizeBytes = *iv
				}
			case "rate_limit_requests_per_second":
				if iv != nil {
					p.RateLimitRequestsPerSecond = *iv
				}
			case "rate_limit_burst":
				if iv != nil {
					p.RateLimitBurst = *iv
				}
			}
		}
	}
	return p, nil
}

// PlanLimitError is a plan limit reached (403 limit_exceeded).
type PlanLimitError struct {
	Resource  string
	Current   int64
	Limit     int64
	Plan      string
	UpgradeTo string
}

func (e *PlanLimitError) Error() string {
	msg := fmt.Sprintf("%s limit reached (%d/%d).", strings.ReplaceAll(e.Resource, "_", " "), e.Current, e.Limit)
	if e.UpgradeTo != "" {
		msg += " Upgrade to " + e.UpgradeTo + " for higher limits."
	}
	return msg
}

// PlanPayloadError is a payload over the plan's size limit (413).
type PlanPayloadError struct {
	Size, Limit int64
	Plan        string
	UpgradeTo   string
}

func (e *PlanPayloadError) Error() string {
	return fmt.Sprintf("Payload of %d bytes exceeds the %s plan's limit of %d bytes.", e.Size, e.Plan, e.Limit)
}

// checkPlan enforces the plan's job limits for a batch about to be
// enqueued. The counts are read just before the insert, so concurrent
// creates can overshoot by their own size: the limits are quotas, not
// locks. Jobs created today come from the queue_stats projection and trail
// by its lag. A batch that fits the usage remembered in s.quota (see
// quotaMemo) needs no read; any other is decided by a fresh one.
func (s *Service) checkPlan(ctx context.Context, actor Actor, jobs []NewJob) error {
	p := actor.Limits
	if p == nil {
		return nil
	}
	for _, j := range jobs {
		if int64(len(j.Payload)) > p.MaxPayloadSizeBytes {
			return &PlanPayloadError{Size: int64(len(j.Payload)), Limit: p.MaxPayloadSizeBytes, Plan: p.Tier, UpgradeTo: upgrades[p.Tier]}
		}
	}
	if p.MaxActiveJobs == nil && p.MaxJobsPerDay == nil {
		return nil
	}
	batch := int64(len(jobs))
	now := s.Now()
	today := now.UTC().Truncate(24 * time.Hour)
	fits := func(u quotaUsage) bool {
		return (p.MaxActiveJobs == nil || u.active+batch <= *p.MaxActiveJobs) &&
			(p.MaxJobsPerDay == nil || u.today+batch <= *p.MaxJobsPerDay)
	}
	if u, ok := s.quota.get(actor.OrgID, now, today); ok && fits(u) {
		return nil
	}
	u := quotaUsage{day: today, readAt: now}
	if p.MaxActiveJobs != nil {
		cur, err := s.q.OrgActiveJobs(ctx, s.pool, actor.OrgID)
		if err != nil {
			return fmt.Errorf("count active jobs: %w", err)
		}
		u.active = cur
	}
	if p.MaxJobsPerDay != nil {
		w, err := s.q.StatsWindow(ctx, s.pool, queries.StatsWindowParams{OrganizationID: actor.OrgID, Since: today})
		if err != nil {
			return fmt.Errorf("count today's jobs: %w", err)
		}
		u.today = w.Created
	}
	s.quota.put(actor.OrgID, u)
	if p.MaxActiveJobs != nil && u.active+batch > *p.MaxActiveJobs {
		return &PlanLimitError{Resource: "active_jobs", Current: u.active, Limit: *p.MaxActiveJobs, Plan: p.Tier, UpgradeTo: upgrades[p.Tier]}
	}
	if p.MaxJobsPerDay != nil && u.today+batch > *p.MaxJobsPerDay {
		return &PlanLimitError{Resource: "jobs_per_day", Current: u.today, Limit: *p.MaxJobsPerDay, Plan: p.Tier, UpgradeTo: upgrades[p.Tier]}
	}
	return nil
}
