package cmd

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// Serve parses its stable flags into server.Options without starting a
// server (the run function is a parameter, as in cert-manager).
func TestServeFlags(t *testing.T) {
	var got server.Options
	run := func(_ context.Context, o server.Options) error { got = o; return nil }
	root := NewRootCommand(run)
	root.SetArgs([]string{"serve", "--catalog", "/etc/catalog", "--tls-cert-file", "/tls/c.crt", "--tls-key-file", "/tls/c.key",
		"--port", "8443", "--metrics-addr", ":9090", "--health-addr", ":9091", "--log-level", "debug", "--shutdown-grace", "7s"})
	root.SetOut(&bytes.Buffer{})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.CatalogPath != "/etc/catalog" || got.CertFile != "/tls/c.crt" || got.KeyFile != "/tls/c.key" || got.Port != 8443 ||
		got.MetricsAddr != ":9090" || got.HealthAddr != ":9091" || got.ShutdownGrace != 7*time.Second {
		t.Errorf("options %+v", got)
	}

	defaults := server.Options{}
	root = NewRootCommand(func(_ context.Context, o server.Options) error { defaults = o; return nil })
	root.SetArgs([]string{"serve", "--cert-dir", "/certs"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if defaults.Port != 9443 || defaults.MetricsAddr != ":8080" || defaults.HealthAddr != ":8081" || defaults.CertDir != "/certs" {
		t.Errorf("defaults %+v", defaults)
	}
}

func TestServeRefusesBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no certificate":         {"serve"},
		"a port out of range":    {"serve", "--cert-dir", "c", "--port", "70000"},
		"an unknown log level":   {"serve", "--cert-dir", "c", "--log-level", "loud"},
		"a cert without its key": {"serve", "--tls-cert-file", "c.crt"},
		"a zero grace":           {"serve", "--cert-dir", "c", "--shutdown-grace", "0s"},
	} {
		t.Run(name, func(t *testing.T) {
			called := false
			root := NewRootCommand(func(context.Context, server.Options) error { called = true; return nil })
			var stderr bytes.Buffer
			code := run(root, args, &stderr)
			if code != ExitBadInput || called {
				t.Errorf("exit %d, server started %v; stderr %s", code, called, stderr.String())
			}
		})
	}
}

func run(root interface {
	SetArgs([]string)
	ExecuteContext(context.Context) error
}, args []string, stderr *bytes.Buffer) int {
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(stderr, err)
		return exitCode(err)
	}
	return ExitOK
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
