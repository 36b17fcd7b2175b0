// Command filechild is a process of the file cache's fleet tests: see
// package child. Not for use outside the tests.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/fleet/child"
)

func main() {
	var f child.Flags
	f.Register(flag.CommandLine)
	dir := flag.String("dir", "", "file cache directory")
	flag.Parse()
	if err := child.Run(f, m2mtoken.NewFileCache(*dir)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
