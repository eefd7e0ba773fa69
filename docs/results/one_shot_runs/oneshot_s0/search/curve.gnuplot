# Accuracy against BitOPs of `diffq search` (run: gnuplot curve.gnuplot).
set terminal svg size 720,480 font "sans,12"
set output "curve.svg"
set grid
set key bottom right
set xlabel "BitOPs per example (millions)"
set ylabel "test accuracy (%), zero retraining"
plot "< awk '$1 ~ /^(bitops|mib)=/' curve.dat | sort -g -k2" using 2:4 with linespoints pt 7 title "searched", \
     "< awk '$1 ~ /^W[0-9]+A[0-9]+$/' curve.dat | sort -g -k2" using 2:4 with points pt 5 title "uniform", \
     "< awk '$1 ~ /^W[0-9]+A[0-9]+$/' curve.dat" using 2:4:1 with labels offset char 0,1 notitle
