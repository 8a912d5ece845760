# syntax=docker/dockerfile:1
# Build: static binary, version stamped. Run: distroless, non-root (65532).
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY pkg ./pkg
RUN CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath \
      -ldflags "-s -w -X github.com/podpatterns/sidecar-injector/pkg/version.Version=${VERSION}" \
      -o /out/sidecar-injector ./cmd/sidecar-injector

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/sidecar-injector /sidecar-injector
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/sidecar-injector"]
CMD ["serve"]
