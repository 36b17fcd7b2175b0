package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeFiresInOrder(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	var got []int
	c.AfterFunc(3*time.Second, func() { got = append(got, 3) })
	c.AfterFunc(1*time.Second, func() {
		got = append(got, 1)
		c.AfterFunc(time.Second, func() { got = append(got, 2) }) // scheduled from a timer
	})
	stopped := c.AfterFunc(2500*time.Millisecond, func() { got = append(got, 99) })
	stopped.Stop()
	c.Advance(2 * time.Second)
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("after 2s: %v", got)
	}
	c.Advance(time.Second)
	if len(got) != 3 || got[2] != 3 {
		t.Fatalf("after 3s: %v", got)
	}
	if c.Now() != time.Unix(3, 0) || c.Pending() != 0 {
		t.Fatalf("now %v pending %d", c.Now(), c.Pending())
	}
}

func TestFakeSleep(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	fired := false
	c.AfterFunc(time.Second, func() { fired = true })
	if err := c.Sleep(context.Background(), 2*time.Second); err != nil || !fired || c.Now() != time.Unix(2, 0) {
		t.Fatalf("sleep: %v fired=%v now=%v", err, fired, c.Now())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Sleep(ctx, time.Second); err != context.Canceled {
		t.Fatalf("cancelled sleep: %v", err)
	}
}

func TestRealSleepCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Real{}).Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatal(err)
	}
}

func TestFakeSuspend(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	fired := false
	c.AfterFunc(10*time.Second, func() { fired = true })
	c.Advance(4 * time.Second)
	c.Suspend(time.Hour) // the wall clock jumps; the timer has 6 s to go
	if fired || c.Now() != time.Unix(3604, 0) {
		t.Fatalf("after suspend: fired=%v now=%v", fired, c.Now())
	}
	c.Advance(5 * time.Second)
	if fired {
		t.Fatal("fired 1 s early")
	}
	c.Advance(time.Second)
	if !fired {
		t.Fatal("did not fire after 10 s of running time")
	}
}
