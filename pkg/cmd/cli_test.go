package cmd

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/podpatterns/sidecar-injector/pkg/controller"
	"github.com/podpatterns/sidecar-injector/pkg/server"
)

var update = flag.Bool("update", false, "rewrite the golden .golden files")

// TestCLIGolden runs every testdata/cli/*.cmd (one line of arguments; an
// optional .stdin beside it) and compares exit code, stdout and stderr
// with the .golden file beside it.
func TestCLIGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/cli/*.cmd")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 20 {
		t.Fatalf("found %d CLI cases; want at least 20", len(cases))
	}
	for _, c := range cases {
		name := strings.TrimSuffix(c, ".cmd")
		t.Run(filepath.Base(name), func(t *testing.T) {
			line, err := os.ReadFile(c)
			if err != nil {
				t.Fatal(err)
			}
			var stdin bytes.Buffer
			if data, err := os.ReadFile(name + ".stdin"); err == nil {
				stdin.Write(data)
			}
			var stdout, stderr bytes.Buffer
			code := Execute(context.Background(), strings.Fields(string(line)), &stdin, &stdout, &stderr)
			got := fmt.Sprintf("$ sidecar-injector %s# exit %d\n# stdout\n%s# stderr\n%s", line, code, stdout.String(), stderr.String())
			golden := name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./pkg/cmd -run TestCLIGolden -update creates it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs:\n--- want\n%s\n--- got\n%s", golden, want, got)
			}
		})
	}
}

func TestCLIGoldenOutputsHaveCommands(t *testing.T) {
	outs, _ := filepath.Glob("testdata/cli/*.golden")
	for _, o := range outs {
		if _, err := os.Stat(strings.TrimSuffix(o, ".golden") + ".cmd"); err != nil {
			t.Errorf("%s has no .cmd: delete it or restore the command", o)
		}
	}
}

// runners record the options a command would run with, and start
// nothing (the run functions are parameters, as in cert-manager).
type runners struct {
	serve      *server.Options
	controller *controller.ManagerOptions
}

func (r *runners) Runners() Runners {
	return Runners{
		Serve:      func(_ context.Context, o server.Options) error { r.serve = &o; return nil },
		Controller: func(_ context.Context, o controller.ManagerOptions) error { r.controller = &o; return nil },
	}
}

// execute runs a command line with recording runners; the exit code and
// stderr as Execute gives them.
func execute(args ...string) (*runners, int, string) {
	r := &runners{}
	root := NewRootCommand(r.Runners())
	var stderr bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&stderr, err)
	}
	return r, exitCode(err), stderr.String()
}

func TestServeFlags(t *testing.T) {
	r, code, stderr := execute("serve", "--catalog", "/etc/catalog", "--tls-cert-file", "/tls/c.crt", "--tls-key-file", "/tls/c.key",
		"--port", "8443", "--metrics-addr", ":9090", "--health-addr", ":9091", "--log-level", "debug", "--shutdown-grace", "7s", "--max-connection-age", "0")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := server.NewOptions()
	want.CatalogPath, want.CertFile, want.KeyFile, want.Port = "/etc/catalog", "/tls/c.crt", "/tls/c.key", 8443
	want.MetricsAddr, want.HealthAddr, want.ShutdownGrace, want.MaxConnectionAge = ":9090", ":9091", 7*time.Second, 0
	got := *r.serve
	got.Log, got.RestConfig = want.Log, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("options\n%+v\nwant\n%+v", got, want)
	}
}

func TestServeDefaultsAreTheOptionsDefaults(t *testing.T) {
	r, code, stderr := execute("serve", "--cert-dir", "/certs")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := server.NewOptions()
	want.CertDir = "/certs"
	got := *r.serve
	got.Log, got.RestConfig = want.Log, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("options\n%+v\nwant\n%+v", got, want)
	}
}

func TestControllerFlags(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	r, code, stderr := execute("controller", "--kubeconfig", kubeconfig, "--catalog", "/etc/catalog", "--repair", "in-place", "--dry-run",
		"--max-concurrent-restarts", "3", "--max-unavailable", "2", "--upgrade-timeout", "90s", "--upgrade-bare-pods", "--audit-interval", "1m", "--metrics-addr", "0", "--health-addr", ":9", "--leader-elect=false", "--leader-election-namespace", "ops")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := *r.controller
	if got.RestConfig == nil || got.RestConfig.Host != "https://127.0.0.1:6443" {
		t.Errorf("rest config %+v, want the kubeconfig's server", got.RestConfig)
	}
	want := controller.NewManagerOptions()
	want.CatalogPath, want.Repair, want.DryRun, want.MaxConcurrentRestarts, want.AuditInterval = "/etc/catalog", controller.RepairInPlace, true, 3, time.Minute
	want.MaxUnavailable, want.UpgradeTimeout, want.UpgradeBarePods = 2, 90*time.Second, true
	want.MetricsAddr, want.HealthAddr, want.LeaderElection, want.LeaderElectionNamespace = "0", ":9", false, "ops"
	got.Log, got.RestConfig = want.Log, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("options\n%+v\nwant\n%+v", got, want)
	}

	r, code, stderr = execute("controller", "--kubeconfig", kubeconfig)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got = *r.controller
	got.Log, got.RestConfig = want.Log, nil
	if want := controller.NewManagerOptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults\n%+v\nwant\n%+v", got, want)
	}

	for _, args := range [][]string{{"--repair", "sometimes"}, {"--repair", "true"}, {"--max-unavailable", "0"}, {"--upgrade-timeout", "0s"}} {
		_, code, stderr := execute(append([]string{"controller", "--kubeconfig", kubeconfig}, args...)...)
		if code != ExitBadInput || !strings.Contains(stderr, args[0]) {
			t.Errorf("%v: exit %d, %q; want %d naming %s", args, code, stderr, ExitBadInput, args[0])
		}
	}
}

// writeKubeconfig writes a kubeconfig naming a cluster nothing listens
// on: enough to load a configuration, never dialled.
func writeKubeconfig(t *testing.T) string {
	file := filepath.Join(t.TempDir(), "kubeconfig")
	text := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestLongRunningCommandsRefuseBadFlags(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"serve with no certificate":          {[]string{"serve"}, "no serving certificate"},
		"serve with a port out of range":     {[]string{"serve", "--cert-dir", "c", "--port", "70000"}, "--port 70000 is not a port"},
		"serve with an unknown log level":    {[]string{"serve", "--cert-dir", "c", "--log-level", "loud"}, `--log-level "loud" not supported`},
		"serve with a cert without its key":  {[]string{"serve", "--tls-cert-file", "c.crt"}, "go together"},
		"serve with a zero grace":            {[]string{"serve", "--cert-dir", "c", "--shutdown-grace", "0s"}, "must be positive"},
		"serve with a negative age":          {[]string{"serve", "--cert-dir", "c", "--max-connection-age", "-1s"}, "must not be negative"},
		"serve with a kubeconfig not there":  {[]string{"serve", "--cert-dir", "c", "--kubeconfig", "/nonexistent"}, "loading the cluster configuration"},
		"controller with an unknown repair":  {[]string{"controller", "--kubeconfig", kubeconfig, "--repair", "always"}, `--repair "always" not supported`},
		"controller with no restarts":        {[]string{"controller", "--kubeconfig", kubeconfig, "--max-concurrent-restarts", "0"}, "at least 1"},
		"controller with no cluster":         {[]string{"controller", "--kubeconfig", "/nonexistent"}, "loading the cluster configuration"},
		"controller with a zero interval":    {[]string{"controller", "--kubeconfig", kubeconfig, "--audit-interval", "0s"}, "--audit-interval and --upgrade-timeout positive"},
		"controller with an unknown log lvl": {[]string{"controller", "--kubeconfig", kubeconfig, "--log-level", "loud"}, `--log-level "loud"`},
	} {
		t.Run(name, func(t *testing.T) {
			r, code, stderr := execute(tc.args...)
			if code != ExitBadInput || r.serve != nil || r.controller != nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, started %v; stderr %q, want %q", code, r.serve != nil || r.controller != nil, stderr, tc.want)
			}
		})
	}
}

// diagnose reads everything inject reads and writes: for every CLI input,
// `inject -f IN | diagnose -f -` never exits 2 (bad input).
func TestDiagnoseReadsWhatInjectWrites(t *testing.T) {
	inputs, err := filepath.Glob("testdata/cli/in/*.*")
	if err != nil {
		t.Fatal(err)
	}
	piped := 0
	for _, in := range inputs {
		var injected, stderr bytes.Buffer
		if code := Execute(context.Background(), []string{"inject", "-f", in}, &bytes.Buffer{}, &injected, &stderr); code != 0 {
			continue // denied or not a manifest: nothing to pipe
		}
		piped++
		var out bytes.Buffer
		stderr.Reset()
		if code := Execute(context.Background(), []string{"diagnose", "-f", "-"}, &injected, &out, &stderr); code == ExitBadInput {
			t.Errorf("inject -f %s | diagnose -f -: exit %d: %s", in, code, stderr.String())
		}
	}
	if piped < 10 {
		t.Errorf("only %d inputs went through inject; want at least 10", piped)
	}
}
