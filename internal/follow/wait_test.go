package follow

import (
	"context"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
)

// TestNoReaderWaitsPastItsContext: while one reader is held between its
// two reads of a changed file (a file that keeps changing, a slow mount),
// Last answers at once, and a reader whose context is done gets the last
// snapshot with its context's error instead of waiting for that read; a
// reader with time to wait reads after it, and sees what it took.
func TestNoReaderWaitsPastItsContext(t *testing.T) {
	file := followtest.New(t, "rename", "secret", "one")
	clk := &followtest.SettleGate{Clock: clock.NewFake(time.Now()), Settle: DefaultSettle}
	f := New(file.Path, Options{Clock: clk})
	expect(t, f.Read(context.Background()), "one", 1, "")

	entered, release := clk.Hold()
	t.Cleanup(release)
	file.Change("two")
	first := make(chan Snapshot, 1)
	go func() { first <- f.Read(context.Background()) }()
	<-entered // the first reader holds the turn, between its reads

	var last, cancelled Snapshot
	followtest.Returns(t, "Last", func() { last = f.Last() })
	expect(t, last, "one", 1, "")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	followtest.Returns(t, "a Read whose context is done", func() { cancelled = f.Read(done) })
	expect(t, cancelled, "one", 1, "context canceled")

	third := make(chan Snapshot, 1)
	go func() { third <- f.Read(context.Background()) }()
	release()
	expect(t, <-first, "two", 2, "")
	expect(t, <-third, "two", 2, "")
	expect(t, f.Last(), "two", 2, "")
}
