inject -f testdata/cli/in/pod.yaml --diff
