package copier

import (
	"context"
	"sync"
)

// pool runs a copy's fetches on at most n long-lived goroutines.
//
// A goroutine per fetch (errgroup's Go) starts every GET on a fresh small
// stack (2 KiB, or the average the runtime last measured) that the S3
// SDK's deep middleware chain then grows several times, copying it each
// time: 12% of the driver's CPU in a COPY of 16 KiB files, which is
// CPU-bound in the driver on loopback (perf, 5 December 2026).
// A busy worker keeps its grown stack from one fetch to the next (the
// collector may halve the stack of one left idle).
//
// Contract, as errgroup.WithContext with SetLimit(n) but for one caller:
// Go waits until a worker takes the task and every task given to Go runs,
// also after one failed (tasks see the cancelled context and return
// quickly); the first error cancels the pool's context (without a cause);
// Wait waits for every task, cancels the context and returns the first
// error. Go must be called from one goroutine only, never from a task,
// and not after Wait.
type pool struct {
	tasks   chan func() error
	n       int
	started int // workers started, by the goroutine calling Go
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// newPool returns a pool of at most n workers (at least 1) and the
// context its tasks run under.
func newPool(ctx context.Context, n int) (*pool, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &pool{tasks: make(chan func() error), n: max(n, 1), cancel: cancel}, ctx
}

// Go runs task on an idle worker, starting one while fewer than n run,
// else waiting for one to come free.
func (p *pool) Go(task func() error) {
	select {
	case p.tasks <- task:
		return
	default:
	}
	if p.started < p.n {
		p.started++
		p.wg.Add(1)
		go p.work(task)
		return
	}
	p.tasks <- task
}

// work runs first, then every task handed over until Wait.
func (p *pool) work(first func() error) {
	defer p.wg.Done()
	p.run(first)
	for task := range p.tasks {
		p.run(task)
	}
}

func (p *pool) run(task func() error) {
	if err := task(); err != nil {
		p.once.Do(func() {
			p.err = err
			p.cancel()
		})
	}
}

// Wait waits for every task, cancels the pool's context and returns the
// first error a task returned.
func (p *pool) Wait() error {
	close(p.tasks)
	p.wg.Wait()
	p.cancel()
	return p.err
}
