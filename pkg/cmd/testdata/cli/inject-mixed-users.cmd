inject -f ../inject/testdata/golden/log-shipper-mixed-users.yaml -o patch
