package rediscache

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/m2mtoken/m2mtoken/internal/fleet"
)

// TestMain fails the run if a goroutine outlives the tests: bounded Redis
// calls abandoned at their timeout must still end, and a closed source
// leaves no connection open. Nothing is ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(fleet.CleanupM{M: m})
}
