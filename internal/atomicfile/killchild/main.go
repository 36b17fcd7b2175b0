// Command killchild is the writer that atomicfile's kill test kills: it
// writes the file named by its first argument over and over, printing a
// byte before each write, until it is killed. With a second argument
// "named", its temporary files are named from the start, as on systems
// without unnamed files. Not for use outside the tests.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: killchild PATH [named]")
		os.Exit(2)
	}
	path := os.Args[1]
	if len(os.Args) > 2 && os.Args[2] == "named" {
		atomicfile.NamedOnlyForTests()
	}
	data := bytes.Repeat([]byte("TOKEN-"), 16<<10)
	out := bufio.NewWriter(os.Stdout)
	for {
		out.WriteByte('.')
		out.Flush()
		if err := atomicfile.Write(path, "."+filepath.Base(path)+".tmp-*", data, -1); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
