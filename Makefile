# sidecar-injector
GO        ?= go
BIN       ?= bin/sidecar-injector
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/podpatterns/sidecar-injector/pkg/version.Version=$(VERSION)
IMAGE     ?= sidecar-injector:$(VERSION)
export GOTOOLCHAIN := local

.PHONY: build test unit e2e controlplane demo cluster run bench certs deploy image image-test fmt vet clean

build: ## static binary, the same one the image holds
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sidecar-injector

controlplane: ## build or find kube-apiserver, etcd, kube-controller-manager and kubelet
	@bash test/controlplane.sh >/dev/null

# Helm's libraries (the chart's tests), cert-manager's and the Prometheus
# Operator's types and Prometheus' rule parser (the chart and monitoring
# tests) are imported by test files only: they are in go.mod so that one `go test ./...` runs every
# test, and never in the binary (`go version -m bin/sidecar-injector`).
test: controlplane ## every test: unit, golden, handler, end-to-end against a real API server, and injected Pods on a real node
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) test -count=1 -timeout 20m ./...

unit: ## tests that need no control plane
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

demo: build controlplane ## local control plane + webhook + the examples, as a user would; then each pattern at work on a real node where the machine allows
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) run ./test/demo
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) run ./test/node/demo

cluster: controlplane ## control plane, a real node and the webhook until interrupted; the last line is the export KUBECONFIG=... to use (root)
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) run ./test/node/up

run: build certs ## serve locally with the embedded catalog
	@echo "Send the sample review with:"
	@echo "  curl -sk -H 'Content-Type: application/json' --data @test/testdata/review.json https://localhost:9443/mutate-pods"
	$(BIN) serve --cert-dir certs --metrics-addr :8080 --health-addr :8081 --log-level debug

certs: ## development CA and serving certificate under certs/ (kept out of git)
	@test -f certs/tls.crt || $(GO) run ./cmd/sidecar-injector certs --out-dir certs --hosts localhost,127.0.0.1

bench: build controlplane ## Go benchmarks; the handler against a floor over HTTP/1.1 and HTTP/2; a flood of large bodies; Pods created through kube-apiserver; the controller over 150,000 Pods; Pods started and stopped, and sidecars upgraded, on the node
	$(GO) test -run XXX -bench . -benchmem ./pkg/inject ./pkg/admission
	$(GO) run ./test/load -server $(BIN) -rounds 5 -duration 3s
	$(GO) run ./test/load -server $(BIN) -flood -duration 5s
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) run ./test/apiload -server $(BIN) -rounds 10 -duration 3s
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) run ./test/fleetload -server $(BIN)
	KUBEBUILDER_ASSETS="$$(bash test/controlplane.sh 2>/dev/null)" $(GO) test -run XXX -bench 'PodLifecycle|SidecarUpgrade' -benchtime 5x ./test/node

deploy: build ## development certificates + the self-signed overlay, applied to the current kubectl context
	$(BIN) certs --out-dir deploy/overlays/self-signed --webhook-config deploy/overlays/self-signed/webhook-ca.yaml
	kubectl apply -k deploy/overlays/self-signed

# The image copies the static binary of `make build` onto scratch, so no
# base image is pulled; podman or docker, whichever is installed.
ENGINE    ?= $(shell command -v podman || command -v docker)

image: build ## the image, with podman or docker
	@test -n "$(ENGINE)" || { echo "no container engine: install podman (apt-get install podman runc)"; exit 1; }
	CONTAINERS_CONF=$(CURDIR)/test/image/containers.conf $(ENGINE) build -t $(IMAGE) .

image-test: ## installs podman if missing, builds the image and runs it as the Deployment does (needs root)
	@command -v podman >/dev/null || { apt-get update -qq && apt-get install -y -qq podman runc; }
	$(MAKE) image ENGINE=$$(command -v podman)
	CONTAINERS_CONF=$(CURDIR)/test/image/containers.conf $(GO) run ./test/image -image $(IMAGE)

fmt:
	gofmt -l -w cmd pkg test

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
