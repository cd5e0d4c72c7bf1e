module posthorn.example/receiver

go 1.19
