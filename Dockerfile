# The image holds the static binary `make build` produces and nothing
# else: no shell, no base image to pull, so it builds on machines that
# reach no container registry. `make image` builds the binary first.
FROM scratch
COPY bin/sidecar-injector /sidecar-injector
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/sidecar-injector"]
CMD ["serve"]
