//go:build race

package fleet

// raceEnabled: the test binary, and so the processes it builds, run with
// the race detector.
const raceEnabled = true
