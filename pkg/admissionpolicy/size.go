package admissionpolicy

import (
	"fmt"
	"strings"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
)

// The policies' size guards, evaluated before anything that iterates
// over the Pod, so that what a large Pod costs the API server is bounded.
//
// tooLarge: the webhook refuses a review of more than admission.MaxValues
// objects and arrays before it reads the Pod; the policies deny such a
// Pod too, for the same cause. They count what they can count cheaply,
// a lower bound of the webhook's count: each container, its resources
// and each entry of its lists, each volume and its source.
//
// tooCostly: cel-go tracks the cost of a comprehension in time that grows
// with the square of the list's length, so a container of thousands of
// env vars costs the policies seconds where the webhook takes
// milliseconds (docs/performance.md). A Pod that gets templates and has
// more than maxContainers containers, or a container with more than
// maxEnv env vars, is declined, with the reason, for the webhook to
// inject.
const (
	maxContainers = 250
	maxEnv        = 1000
)

func (g *gen) sizeGuards() {
	perContainer := func(list string) string {
		counted := []string{"2"} // the container and its resources
		for _, f := range []string{"env", "envFrom", "ports", "volumeMounts"} {
			counted = append(counted, fmt.Sprintf("(has(c.%s) ? 1 + size(c.%[1]s) : 0)", f))
		}
		return fmt.Sprintf("(has(object.spec.%s) && size(object.spec.%[1]s) > 0 ? object.spec.%[1]s.map(c, %s).sum() : 0)", list, strings.Join(counted, " + "))
	}
	g.v("podValues", fmt.Sprintf("6 + %s + %s + (has(object.spec.volumes) ? 1 + 2 * size(object.spec.volumes) : 0)", perContainer("containers"), perContainer("initContainers")))
	g.v("tooLarge", fmt.Sprintf("variables.podValues > %d", admission.MaxValues))
	g.v("tooCostly", fmt.Sprintf("size(object.spec.containers) + (has(object.spec.initContainers) ? size(object.spec.initContainers) : 0) > %d || object.spec.containers.exists(c, has(c.env) && size(c.env) > %d)", maxContainers, maxEnv))
}

// guarded is problems behind the size guards: the denial of a Pod too
// large for the injector, the policies' decline of one too costly for
// CEL, and only then what else is wrong with it.
func guarded(problems string) string {
	before, after, _ := strings.Cut(admission.TooManyValues, "%s")
	tooLarge := fmt.Sprintf("%s + string(variables.podValues) + %s", lit(before+"at least "), lit(" JSON objects and arrays"+after))
	return fmt.Sprintf("variables.tooLarge ? [%s] : size(variables.names) > 0 && variables.tooCostly ? [%s] : %s", tooLarge, lit(costlyDenial), problems)
}

// costlyDenial is the policies' decline of a Pod too costly for CEL.
var costlyDenial = fmt.Sprintf("the compiled admission policies decline this Pod: it has more than %d containers or a container with more than %d env vars, which CEL evaluates in time that grows with the square of their number; inject it with the webhook instead", maxContainers, maxEnv)
