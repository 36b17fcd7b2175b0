// What the agent says about the variables that hold a source's
// credential: a variable's name is echoed only if it looks like one. (A
// file of a secret or a key that other users may read gets a warning:
// settings.FileWarnings.)

package agent

import (
	"fmt"
	"regexp"
	"unicode/utf8"
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
