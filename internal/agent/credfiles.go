// What the agent says about the variables and files that hold a source's
// credential: a variable's name is echoed only if it looks like one, and a
// file of a secret or a key that other users may read gets a warning.

package agent

import (
	"fmt"
	"regexp"
	"unicode/utf8"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// variableName is what the name of an environment variable that holds a
// secret looks like: upper-case letters, digits and underscores, not
// starting with a digit. A secret typed where its variable's name was
// wanted (Auth0's have lower-case letters) does not, and is not shown.
var variableName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)

// unsetVariable says that the variable name, given in
// "client_secret_env", is empty or unset; it names the variable only if
// name looks like a variable's name.
func unsetVariable(name string) string {
	if variableName.MatchString(name) {
		return fmt.Sprintf("the environment variable %s is empty or unset: set it to the client secret in the agent's environment", name)
	}
	return fmt.Sprintf("the environment variable it names is empty or unset, and the name given (%d characters, not shown) is not like one (upper-case letters, digits and _, such as BILLING_SECRET): if it is the secret itself, put the secret in a variable of the agent's environment and give the variable's name here",
		utf8.RuneCountInString(name))
}

// warnings are what the agent logs at start about the source's files: a
// secret or key file that its group or others may read.
func (fs *fileSource) warnings() []string {
	var out []string
	for _, f := range [][2]string{{"client_secret_file", fs.ClientSecretFile}, {"private_key_file", fs.PrivateKeyFile}, {"dpop_key_file", fs.DPoPKeyFile}} {
		if f[1] == "" {
			continue
		}
		if w := atomicfile.ReadableWarning(`"`+f[0]+`"`, f[1]); w != "" {
			out = append(out, w)
		}
	}
	return out
}
