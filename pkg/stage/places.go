package stage

import (
	"context"
	"sync"
)

// places shares the node's places for running copies among tenants (the
// namespaces the volumes serve; "" for volumes whose namespace is not
// known, one tenant together). At most n copies run at once, and one
// tenant runs at most n-1 of them (1 when n is 1), so however many copies
// one namespace queued, another namespace's copy starts at once while only
// that one copies. A place that comes free goes to the waiting copy of the
// tenant running fewest, the earliest of them among equals.
//
// A copy cannot be stopped for another, so a tenant that holds places
// keeps them until its copies end: with n-1 places held by one tenant and
// the last by another, a third waits for the first copy to end.
type places struct {
	mu      sync.Mutex
	n       int
	running int
	held    map[string]int // running copies per tenant
	queue   []*placeTicket // waiting, in arrival order
}

// placeTicket is one copy's claim on a place.
type placeTicket struct {
	tenant string
	// given is closed once the copy holds its place.
	given chan struct{}
}

func newPlaces(n int) *places {
	return &places{n: max(1, n), held: map[string]int{}}
}

// perTenant is the most places one tenant holds at once.
func (p *places) perTenant() int { return max(1, p.n-1) }

// join queues a copy of tenant and gives it a place if one is free for it.
// The caller then waits on the ticket (wait) unless it holds a place
// already (held), and gives the place back with leave once its copy ended.
func (p *places) join(tenant string) *placeTicket {
	t := &placeTicket{tenant: tenant, given: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, t)
	p.grant()
	return t
}

// held reports whether t holds its place.
func (t *placeTicket) held() bool {
	select {
	case <-t.given:
		return true
	default:
		return false
	}
}

// wait returns once t holds its place (nil), or when ctx ends first (its
// error; t then holds nothing and needs no leave).
func (p *places) wait(ctx context.Context, t *placeTicket) error {
	select {
	case <-t.given:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, q := range p.queue {
		if q == t {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			return ctx.Err()
		}
	}
	// Given a place as ctx ended: hand it on.
	p.free(t.tenant)
	return ctx.Err()
}

// leave gives back the place t holds.
func (p *places) leave(t *placeTicket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free(t.tenant)
}

// free returns one of tenant's places and hands out what it freed. The
// caller holds mu.
func (p *places) free(tenant string) {
	p.running--
	if p.held[tenant]--; p.held[tenant] <= 0 {
		delete(p.held, tenant)
	}
	p.grant()
}

// grant gives free places to waiting copies: each time to the earliest
// copy of the tenant running fewest that is under its share. The caller
// holds mu.
func (p *places) grant() {
	for p.running < p.n {
		best := -1
		for i, t := range p.queue {
			h := p.held[t.tenant]
			if h >= p.perTenant() {
				continue
			}
			if best < 0 || h < p.held[p.queue[best].tenant] {
				best = i
			}
		}
		if best < 0 {
			return
		}
		t := p.queue[best]
		p.queue = append(p.queue[:best], p.queue[best+1:]...)
		p.running++
		p.held[t.tenant]++
		close(t.given)
	}
}
