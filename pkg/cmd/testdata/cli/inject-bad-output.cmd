inject -f testdata/cli/in/pod.yaml -o xml
