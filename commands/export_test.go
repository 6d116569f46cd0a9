package commands

import "context"

// FlushEnqueues runs one group-commit flush of single enqueues, as a
// flusher does for the requests it gathered at once: job i for actors[i].
func (s *Service) FlushEnqueues(ctx context.Context, actors []Actor, jobs []NewJob) ([]EnqueueResult, []error) {
	reqs := make([]enqueueReq, len(jobs))
	for i := range jobs {
		reqs[i] = enqueueReq{actor: actors[i], job: jobs[i]}
	}
	out := s.flushEnqueues(ctx, reqs)
	res, errs := make([]EnqueueResult, len(out)), make([]error, len(out))
	for i, o := range out {
		res[i], errs[i] = o.res, o.err
	}
	return res, errs
}

// FlushCompletes runs one group-commit flush of single completes, request i
// in organization orgIDs[i].
func (s *Service) FlushCompletes(ctx context.Context, orgIDs []string, items []CompleteItem) []error {
	reqs := make([]completeReq, len(items))
	for i := range items {
		reqs[i] = completeReq{orgID: orgIDs[i], item: items[i]}
	}
	out := s.flushCompletes(ctx, reqs)
	errs := make([]error, len(out))
	for i, o := range out {
		errs[i] = o.res
	}
	return errs
}

// ValidateBulk validates a bulk call's jobs as EnqueueBulk does, without
// the database: the first error, placed in its item.
func (s *Service) ValidateBulk(jobs []NewJob) error {
	for i, j := range jobs {
		if err := s.validateJob(j); err != nil {
			return itemError(i, err)
		}
	}
	return nil
}
