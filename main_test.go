package m2mtoken

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/m2mtoken/m2mtoken/internal/fleet"
)

// TestMain fails the run if any goroutine outlives the tests: background
// refreshes, fetches and timers must all end (after Close at the latest).
// Nothing is ignored: not even net/http's connection goroutines, so that
// connections a source leaves open after Close are found too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(fleet.CleanupM{M: m})
}
