inject -f ../inject/testdata/golden/host-network-ports.yaml
