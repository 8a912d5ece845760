package catalog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestDefaultCatalog(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatalf("embedded default catalog is invalid: %v", err)
	}
	want := map[string]Pattern{"log-shipper": Sidecar, "ambassador": Ambassador, "metrics-adapter": Adapter, "content-filler": Sidecar}
	for name, pattern := range want {
		tmpl := c.Template(name)
		if tmpl == nil {
			t.Errorf("default catalog lacks %q; have %v", name, c.Names())
			continue
		}
		if tmpl.Pattern != pattern {
			t.Errorf("%s: pattern %s, want %s", name, tmpl.Pattern, pattern)
		}
		for _, ctr := range append(tmpl.InitContainers, tmpl.Containers...) {
			tag := ctr.Image[strings.LastIndex(ctr.Image, "/")+1:]
			if !strings.Contains(tag, ":") && !strings.Contains(tag, "@") || strings.HasSuffix(tag, ":latest") {
				t.Errorf("%s: image %q is not pinned", name, ctr.Image)
			}
			if ctr.Resources.Limits == nil || ctr.Resources.Requests == nil {
				t.Errorf("%s: container %s has no resources in the catalog", name, ctr.Name)
			}
		}
	}
	if len(c.Names()) != len(want) {
		t.Errorf("default catalog has %v, want exactly %d templates", c.Names(), len(want))
	}
}

func TestValidationReportsEveryProblemWithItsPath(t *testing.T) {
	broken := `
apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: ok
  pattern: sidecar
  description: fine
  containers: [{name: a, image: busybox:1.37.0}]
- name: Bad_Name
  pattern: sidekick
  description: ""
  parameters:
  - {name: p, validation: "(", default: x}
  overrides:
    resources:
      requests: {cpu: {min: -100m, max: 500m}}
  containers:
  - name: a
  - name: b
    image: busybox:1.37.0
    args: ["{{missing}}"]
    securityContext: {privileged: true, runAsUser: 0}
    volumeMounts: [{name: nowhere, mountPath: /x}]
  volumes: [{name: kube-api-access-token, emptyDir: {}}]
- name: ok
  pattern: adapter
  description: duplicate
  containers: [{name: c, image: busybox:1.37.0}]
policies:
- name: p
  namespaceSelector: {matchLabels: {a: b}}
  allowed: [ok]
  defaults: [ghost]
`
	_, err := Parse(Source{Name: "cm.yaml", Data: []byte(broken)})
	if err == nil {
		t.Fatal("a broken catalog was accepted")
	}
	for _, want := range []string{
		"cm.yaml (document 1): templates[1].name: Invalid value: \"Bad_Name\"",
		"templates[1].pattern: Unsupported value: \"sidekick\"",
		"templates[1].description: Required value",
		"templates[1].parameters[0].validation: Invalid value",
		"templates[1].overrides.resources.requests[cpu].min: Invalid value: \"-100m\": must not be negative",
		"templates[1].containers[0].image: Required value",
		"templates[1].containers[1].securityContext.privileged: Forbidden",
		"templates[1].containers[1].securityContext.runAsUser: Forbidden",
		"templates[1].containers[1].volumeMounts[0].name: Not found: \"nowhere\"",
		"{{missing}}",
		`templates[1].volumes[0].name: Invalid value: "kube-api-access-token": kube-api-access- names the API server's service account token volume`,
		"templates[2].name: Duplicate value",
		"policies[0].defaults[0]: Not found: \"ghost\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q; got:\n%v", want, err)
		}
	}
}

func TestBadYAMLIsAnErrorNotAPanic(t *testing.T) {
	for name, text := range map[string]string{
		"unknown field is refused":      "apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\ntemplatez: []\n",
		"wrong kind is refused":         "apiVersion: v1\nkind: ConfigMap\n",
		"broken YAML is refused":        "templates: [\n",
		"an empty file is refused":      "# nothing\n",
		"a scalar document is refused":  "42\n",
		"a null template is refused":    "apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\ntemplates: [null]\n",
		"a policy with no selector too": "apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\npolicies: [{name: x}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(Source{Name: "x.yaml", Data: []byte(text)}); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// A mounted ConfigMap is a directory of key symlinks into ..data, which
// points at a timestamped directory. Each key must be read once.
func TestLoadConfigMapDirectory(t *testing.T) {
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_11_21_10_00_00.000000001")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	extra := "apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\ntemplates:\n- name: extra\n  pattern: adapter\n  description: x\n  containers: [{name: extra, image: busybox:1.37.0}]\n"
	files := map[string][]byte{"catalog.yaml": DefaultYAML(), "extra.yaml": []byte(extra), "README": []byte("not yaml")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "ambassador,content-filler,extra,log-shipper,metrics-adapter" {
		t.Errorf("templates %s", got)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing path was accepted")
	}
}

func TestRenderSubstitutesStringsOnly(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := c.Template("log-shipper")
	// A value that would change a templated YAML document's structure
	// stays one string. (Validation refuses it before rendering; Render
	// itself must still never reinterpret it.)
	odd := "/x\n  privileged: true"
	got := tmpl.Render(Values{"log-dir": odd})
	if got.AppVolumeMounts[0].MountPath != odd || got.AppEnv[0].Value != odd {
		t.Errorf("mount %q env %q", got.AppVolumeMounts[0].MountPath, got.AppEnv[0].Value)
	}
	if got.Containers[0].SecurityContext.Privileged != nil {
		t.Error("a value changed the structure")
	}
	again := tmpl.Render(Values{"log-dir": "/logs"})
	if again.AppVolumeMounts[0].MountPath != "/logs" {
		t.Errorf("second render %q: the first changed the template", again.AppVolumeMounts[0].MountPath)
	}
	if tmpl.AppVolumeMounts[0].MountPath != "{{log-dir}}" {
		t.Errorf("template changed to %q", tmpl.AppVolumeMounts[0].MountPath)
	}
}

// Render's cache must keep apart values that a joined key would mix up,
// whatever bytes a parameter's own validation lets through, and must give
// back the content it rendered before for the same values.
func TestRenderCacheKeepsValuesApart(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := c.Template("ambassador") // parameters: upstream, port
	for _, pair := range [][2][2]string{
		{{"db:1", "80"}, {"db:18", "0"}},
		{{"db:1\x00", "80"}, {"db:1", "\x0080"}},
		{{"", "db:1"}, {"db:1", ""}},
	} {
		values := func(v [2]string) Values { return Values{"upstream": v[0], "port": v[1]} }
		a, b := tmpl.Render(values(pair[0])), tmpl.Render(values(pair[1]))
		if a == b || a.Containers[0].Args[1] != "TCP:"+pair[0][0] || b.Containers[0].Args[1] != "TCP:"+pair[1][0] {
			t.Errorf("%q and %q: args %q and %q", pair[0], pair[1], a.Containers[0].Args, b.Containers[0].Args)
		}
		if again := tmpl.Render(values(pair[0])); again != a {
			t.Errorf("%q rendered twice: not cached", pair[0])
		}
	}
	// A parameter without a value takes its default: the same content as
	// the default given.
	if got, want := tmpl.Render(Values{"upstream": "db:1"}), tmpl.Render(Values{"upstream": "db:1", "port": tmpl.Parameters[1].Default}); got != want {
		t.Errorf("a missing value is not the default: %q, want %q", got.Containers[0].Args, want.Containers[0].Args)
	}
}

// Renders race each other and fill the cache past its bound; every one
// must still get its own values, and a value seen before its content.
func TestRenderConcurrently(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := c.Template("ambassador") // a fresh catalog: its cache is empty
	first := tmpl.Render(Values{"upstream": "first:1", "port": "9000"})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range renderCacheSize + 44 {
				upstream := fmt.Sprintf("db-%d:%d", i, g%2)
				got := tmpl.Render(Values{"upstream": upstream, "port": "9000"})
				if got.Containers[0].Args[1] != "TCP:"+upstream {
					t.Errorf("rendered %q for %s", got.Containers[0].Args[1], upstream)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(tmpl.cache.entries); n != renderCacheSize {
		t.Errorf("cache holds %d variants, want %d", n, renderCacheSize)
	}
	if tmpl.Render(Values{"upstream": "first:1", "port": "9000"}) != first {
		t.Error("the first variant was not kept")
	}
}

// deploy/base ships the default catalog as the ConfigMap admins edit; it
// must be the embedded one until they do.
func TestDeployedCatalogIsTheDefault(t *testing.T) {
	deployed, err := os.ReadFile("../../deploy/base/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(deployed) != string(DefaultYAML()) {
		t.Error("deploy/base/catalog.yaml differs from pkg/catalog/default.yaml: copy the one you changed over the other")
	}
}

// What a catalog promises it keeps: a pinned image is pinned by a real
// digest, no Pod chooses an image, one document sets the defaults, a
// policy name means one policy.
func TestCatalogKeepsItsPromises(t *testing.T) {
	const head = "apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\n"
	template := func(image string) string {
		return "templates:\n- {name: a, pattern: sidecar, description: a, containers: [{name: a, image: '" + image + "'}]}\n"
	}
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	param := func(def string) string {
		return "templates:\n- name: a\n  pattern: sidecar\n  description: a\n  parameters: [{name: v, default: " + def + "}]\n  containers: [{name: a, image: busybox:1.37.0, args: ['{{v}}']}]\n"
	}
	defaults := "defaults: {resources: {limits: {cpu: 100m, memory: 64Mi}}}\n"
	policy := "policies:\n- {name: prod, namespaceSelector: {matchLabels: {env: prod}}, allowed: [a]}\n"
	for name, c := range map[string]struct {
		files []string
		want  string // "" when the catalog loads
	}{
		"an image pinned by a digest":          {[]string{head + "requireDigests: true\n" + template("busybox:1.37.0@"+digest)}, ""},
		"an empty digest is not a pin":         {[]string{head + "requireDigests: true\n" + template("busybox:1.37.0@sha256:")}, "requireDigests is set"},
		"a short digest is not a pin":          {[]string{head + "requireDigests: true\n" + template("busybox@sha256:abc")}, "requireDigests is set"},
		"an image from placeholders":           {[]string{head + template("{{repo}}@sha256:{{digest}}")}, "images take no placeholders"},
		"defaults set once":                    {[]string{head + defaults + template("busybox:1.37.0"), head + policy}, ""},
		"defaults set by a second file":        {[]string{head + defaults + template("busybox:1.37.0"), head + defaults}, "defaults.resources: Duplicate value: set in a.yaml (document 1) already"},
		"a policy name used by a second file":  {[]string{head + policy + template("busybox:1.37.0"), head + policy}, `policies[0].name: Duplicate value: "prod", a policy of a.yaml (document 1)`},
		"a default YAML reads as a number":     {[]string{head + param("1.10")}, "default: 1.1 is not text"},
		"a default YAML reads as octal":        {[]string{head + param("0755")}, "default: 493 is not text"},
		"a default YAML reads as a boolean":    {[]string{head + param("yes")}, "default: true is not text"},
		"a quoted default":                     {[]string{head + param("'1.10'")}, ""},
		"a policy name used twice in one file": {[]string{head + policy + "- {name: prod, namespaceSelector: {matchLabels: {env: dev}}, allowed: [a]}\n" + template("busybox:1.37.0")}, `policies[1].name: Duplicate value: "prod"`},
	} {
		t.Run(name, func(t *testing.T) {
			var sources []Source
			for i, f := range c.files {
				sources = append(sources, Source{Name: string(rune('a'+i)) + ".yaml", Data: []byte(f)})
			}
			_, err := Parse(sources...)
			checkLoads(t, err, c.want)
		})
	}
}

// A default is normalised as the same value given by annotation is, so
// both render, and hash, alike.
func TestDefaultsAreNormalised(t *testing.T) {
	c, err := Parse(Source{Name: "c.yaml", Data: []byte(`apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: a
  pattern: sidecar
  description: a
  parameters:
  - {name: dir, type: path, default: '/var//log/./app/'}
  - {name: port, type: port, default: '09000'}
  containers: [{name: a, image: busybox:1.37.0, args: ['{{dir}}', '{{port}}']}]
`)})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := c.Template("a")
	byDefault, given := tmpl.Render(Values{}), tmpl.Render(Values{"dir": "/var/log/app", "port": "9000"})
	if byDefault != given {
		t.Errorf("defaults render %q, the same values given %q", byDefault.Containers[0].Args, given.Containers[0].Args)
	}
}

// Each template is rendered with its defaults at load, and what could
// never work in a Pod is refused there, not at the first Pod.
func TestTemplatesThatCanNeverWorkAreRefused(t *testing.T) {
	const head = "apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\ntemplates:\n"
	proxy := func(port, probe string) string {
		return `- name: proxy
  pattern: ambassador
  description: p
  localPorts: ['{{port}}']
  parameters: [{name: port, type: ` + port + `}]
  containers:
  - name: proxy
    image: busybox:1.37.0
    args: ['{{port}}']
` + probe
	}
	sidecar := func(name, container string) string {
		return "- {name: " + name + ", pattern: sidecar, description: s, containers: [{name: " + container + ", image: busybox:1.37.0}]}\n"
	}
	for name, c := range map[string]struct {
		doc  string
		want string // "" when it loads
	}{
		"a local port whose default is not a port": {head + strings.Replace(proxy("string", ""), "type: string", "default: http", 1),
			`templates[proxy].localPorts[0]: Invalid value: "http": renders to no port`},
		"a probe on a local port, as rendered": {head + strings.Replace(proxy("port", "    readinessProbe: {tcpSocket: {port: 9000}}\n"), "type: port", "type: port, default: '9000'", 1),
			`readinessProbe: Invalid value: "9000": the kubelet probes the Pod's IP`},
		"a required port parameter": {head + strings.Replace(proxy("port", ""), "type: port", "type: port, required: true", 1), ""},
		"an env name the app gets twice": {head + "- {name: e, pattern: sidecar, description: e, appEnv: [{name: A, value: '1'}, {name: A, value: '2'}], containers: [{name: e, image: busybox:1.37.0}]}\n",
			`templates[e].appEnv[1].name: Duplicate value: "A"`},
		"two templates, one container name, neither required": {head + sidecar("a", "shipper") + sidecar("b", "shipper"), ""},
		"two templates, one container name, one required": {head + sidecar("a", "shipper") + sidecar("b", "shipper") + "policies:\n- {name: all, namespaceSelector: {}, required: [a]}\n",
			`container name "shipper" is also a container of template "a", and one of them is required`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(Source{Name: "c.yaml", Data: []byte(c.doc)})
			checkLoads(t, err, c.want)
		})
	}
}

// A Pod that met Pod Security restricted still meets it after injection:
// every way a template could break it is refused at load, unless the
// template declares the level it needs.
func TestTemplatesKeepPodSecurity(t *testing.T) {
	tmpl := func(container, volumes, level string) string {
		return `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: t
  pattern: sidecar
  description: t` + level + `
  volumes: [` + volumes + `]
  containers:
  - {name: t, image: busybox:1.37.0` + container + `}
`
	}
	for name, c := range map[string]struct {
		doc  string
		want string // "" when it loads
	}{
		"a template as the engine secures it": {tmpl("", "", ""), ""},
		"an nfs volume":                       {tmpl("", "{name: shared, nfs: {server: nfs.example, path: /}}", ""), "breaks Pod Security restricted: restricted volume types"},
		"an nfs volume, declared baseline":    {tmpl("", "{name: shared, nfs: {server: nfs.example, path: /}}", "\n  podSecurity: baseline"), ""},
		"a host port":                         {tmpl(", ports: [{containerPort: 80, hostPort: 80}]", "", ""), "hostPort"},
		"SELinux type spc_t":                  {tmpl(", securityContext: {seLinuxOptions: {type: spc_t}}", "", ""), "seLinuxOptions"},
		"an unmasked /proc":                   {tmpl(", securityContext: {procMount: Unmasked}", "", ""), "procMount"},
		"AppArmor unconfined":                 {tmpl(", securityContext: {appArmorProfile: {type: Unconfined}}", "", ""), "AppArmor profile"},
		"a Windows host process":              {tmpl(", securityContext: {windowsOptions: {hostProcess: true}}", "", ""), "hostProcess"},
		"an unknown level":                    {tmpl("", "", "\n  podSecurity: lax"), `podSecurity: Unsupported value: "lax"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(Source{Name: "c.yaml", Data: []byte(c.doc)})
			checkLoads(t, err, c.want)
		})
	}
}

// checkLoads fails the test unless a catalog loaded (want "") or was
// refused with an error holding want.
func checkLoads(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("refused: %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("error %v, want one holding %q", err, want)
	}
}

func TestRequireDigestsRefusesTags(t *testing.T) {
	doc := `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
requireDigests: true
templates:
- {name: a, pattern: sidecar, description: a, containers: [{name: a, image: "registry.example.com/a:1.0"}]}
- {name: b, pattern: sidecar, description: b, containers: [{name: b, image: "registry.example.com/b:1.0@sha256:0000000000000000000000000000000000000000000000000000000000000001"}]}
`
	_, err := Parse(Source{Name: "c.yaml", Data: []byte(doc)})
	if err == nil || !strings.Contains(err.Error(), `templates[a].containers[0].image: Invalid value: "registry.example.com/a:1.0": requireDigests is set`) || strings.Contains(err.Error(), "templates[b]") {
		t.Errorf("error %v: want templates[a] refused and templates[b] accepted", err)
	}
}
