module mapleak.test/testdata

go 1.18
