"""Crystal graphs with the CGCNN conventions (Xie & Grossman, PRL 120, 145301, 2018)."""
