package inject_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

func limitRange(name string, item corev1.LimitRangeItem) corev1.LimitRange {
	item.Type = corev1.LimitTypeContainer
	return corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{item}}}
}

func list(pairs ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		out[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return out
}

// A LimitRange or a ResourceQuota the sidecars would break is said in the
// injector's words before the Pod is patched: the template, what it
// renders, the rule, and the override that fits or that the catalog must
// change. What the app itself breaks is left to the API server.
func TestResourceRulesAreCheckedInOurWords(t *testing.T) {
	cat := testCatalog(t)
	ratio := limitRange("ratio", corev1.LimitRangeItem{MaxLimitRequestRatio: list("cpu", "4")})
	for name, c := range map[string]struct {
		template    string
		annotations map[string]string
		app         corev1.ResourceRequirements
		rules       inject.Rules
		denial      string // "" for none
		warning     string // "" for none
	}{
		"a ratio the content filler breaks, which opens no override": {template: "content-filler", rules: inject.Rules{LimitRanges: []corev1.LimitRange{ratio}},
			denial: `template "content-filler" renders container "content-filler" with a cpu request of 5m and a limit of 50m, a limit 10 times its request; LimitRange "ratio" of this namespace allows a cpu limit of at most 4 times its request: template "content-filler" opens no override of its cpu request that fits (it opens none); ask the cluster admin`},
		"a ratio the log shipper breaks names the override that fits": {template: "log-shipper", rules: inject.Rules{LimitRanges: []corev1.LimitRange{ratio}},
			denial: `a limit 10 times its request; LimitRange "ratio" of this namespace allows a cpu limit of at most 4 times its request: set the annotation log-shipper.sidecars.podpatterns.io/cpu-request: "50m" on the Pod`},
		"… and that override fits": {template: "log-shipper", annotations: map[string]string{inject.ParameterAnnotation("log-shipper", "cpu-request"): "50m"}, rules: inject.Rules{LimitRanges: []corev1.LimitRange{ratio}}},
		"a max below the sidecar's limit": {template: "log-shipper", rules: inject.Rules{LimitRanges: []corev1.LimitRange{limitRange("small", corev1.LimitRangeItem{Max: list("memory", "64Mi")})}},
			denial: `LimitRange "small" of this namespace allows a memory limit of at most 64Mi per container: set the annotation log-shipper.sidecars.podpatterns.io/memory-limit: "64Mi"`},
		"a min above the sidecar's request": {template: "content-filler", rules: inject.Rules{LimitRanges: []corev1.LimitRange{limitRange("big", corev1.LimitRangeItem{Min: list("cpu", "10m")})}},
			denial: `LimitRange "big" of this namespace wants a cpu request of at least 10m per container`},
		"a max on a resource the template leaves to a default that fits": {template: "content-filler", rules: inject.Rules{LimitRanges: []corev1.LimitRange{limitRange("disk", corev1.LimitRangeItem{Max: list("ephemeral-storage", "2Gi"), Default: list("ephemeral-storage", "1Gi")})}}},
		"a max on a resource the template leaves unset, with no default": {template: "content-filler", rules: inject.Rules{LimitRanges: []corev1.LimitRange{limitRange("disk", corev1.LimitRangeItem{Max: list("ephemeral-storage", "2Gi")})}},
			denial: `with no ephemeral-storage request and no limit; LimitRange "disk" of this namespace allows a ephemeral-storage limit of at most 2Gi per container`},
		"the app's own ratio is not the injector's to judge": {template: "log-shipper", annotations: map[string]string{inject.ParameterAnnotation("log-shipper", "cpu-request"): "50m"},
			app: corev1.ResourceRequirements{Requests: list("cpu", "10m"), Limits: list("cpu", "1")}, rules: inject.Rules{LimitRanges: []corev1.LimitRange{ratio}}},
		"a quota the sidecars push over": {template: "content-filler", app: corev1.ResourceRequirements{Requests: list("cpu", "50m")},
			rules:   inject.Rules{Quotas: []corev1.ResourceQuota{{ObjectMeta: metav1.ObjectMeta{Name: "team"}, Status: corev1.ResourceQuotaStatus{Hard: list("requests.cpu", "1"), Used: list("requests.cpu", "948m")}}}},
			warning: `ResourceQuota "team": requests.cpu would be over its hard limit of 1 (948m used): the Pod asks 50m and its sidecars 5m more (content-filler)`},
		"a quota the app alone is over is not the injector's to judge": {template: "content-filler", app: corev1.ResourceRequirements{Requests: list("cpu", "60m")},
			rules: inject.Rules{Quotas: []corev1.ResourceQuota{{ObjectMeta: metav1.ObjectMeta{Name: "team"}, Status: corev1.ResourceQuotaStatus{Hard: list("requests.cpu", "1"), Used: list("requests.cpu", "948m")}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inject.InjectAnnotation: c.template}}}
			for k, v := range c.annotations {
				pod.Annotations[k] = v
			}
			pod.Spec.Containers = []corev1.Container{{Name: "nginx", Image: "nginx:1.27", Resources: c.app}}
			res, err := inject.Pod(pod, nil, cat, injecttest.Keys)
			if err != nil {
				t.Fatal(err)
			}
			warnings, err := inject.CheckRules(pod, res.Plan, cat, c.rules)
			var denial *inject.Denial
			switch {
			case c.denial == "" && err != nil:
				t.Errorf("denied: %v", err)
			case c.denial != "" && (!errors.As(err, &denial) || !strings.Contains(denial.Message, c.denial)):
				t.Errorf("got %v; want a denial holding %q", err, c.denial)
			}
			if got := strings.Join(warnings, "\n"); (c.warning == "") != (got == "") || !strings.Contains(got, c.warning) {
				t.Errorf("warnings %q; want %q", got, c.warning)
			}
		})
	}
}
