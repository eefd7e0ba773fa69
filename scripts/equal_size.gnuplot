# Test accuracy (mean ± std over seeds) of every configuration of
# docs/results/equal_size.dat; run from docs/results.
set terminal svg size 1000,480 dynamic
set output 'equal_size.svg'
set title 'Spec CNN, full Fashion-MNIST, 3 epochs: true quantized accuracy, mean ± std over 3 seeds'
set ylabel 'test accuracy (%)'
set yrange [88:91]
set xtics rotate by -45
set grid ytics
set key off
plot 'equal_size.dat' using 0:4:5:xtic(1) with yerrorbars pt 7 lc rgb '#1f77b4'
